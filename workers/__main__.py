import sys

from hoodyexec.workers.cli import main

sys.exit(main())
