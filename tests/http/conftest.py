from ..features.helpers import api  # noqa: F401 - the shared management client fixture
