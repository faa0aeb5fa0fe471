"""The load engine: a parent that plans, spawns and drains; one uvloop worker per core."""
