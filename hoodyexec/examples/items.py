# @description Method functions: GET lists, POST adds (typed body)
import msgspec


class Item(msgspec.Struct):
    name: str
    qty: int = 1


def GET(shared):
    return {"items": shared.get("items", [])}


def POST(item: Item, shared, res):
    items = shared.get("items", []) + [msgspec.to_builtins(item)]
    shared.set("items", items)
    return res.status(201).json({"added": msgspec.to_builtins(item), "count": len(items)})
