#!/usr/bin/env python3
"""A function handler for examples/function-calling.yaml: respool runs it for each
`get_weather` call, with the call's arguments (JSON) on stdin; what it prints is the output
the model gets. A real one would ask a weather service; this one makes up a forecast from the
city's name, so the example runs anywhere, offline."""

import json
import sys

args = json.load(sys.stdin)
city = str(args.get("city", "")).strip() or "somewhere"
# The same city gets the same weather.
seed = sum(city.encode("utf-8"))
forecast = {
    "city": city,
    "temperature_c": seed % 25 - 3,
    "sky": ["clear", "cloudy", "rain", "snow"][seed % 4],
    "wind_kmh": seed % 40,
}
print(json.dumps(forecast, ensure_ascii=False))
