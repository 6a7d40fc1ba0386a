# @description Echo the request back (handler mode)
def handler(req, body, query):
    return {"method": req.method, "path": req.path, "query": query, "body": body}
