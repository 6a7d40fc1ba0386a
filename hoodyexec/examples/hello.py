# @description Greeting: GET /hello?name=you
return {"hi": metadata.query.get("name", "world")}
