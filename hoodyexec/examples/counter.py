# @description Count visits in the shared, durable state
n = shared.incr("visits")
return {"visits": n}
