"""dads: the library under the services, in three layers with one direction of dependency.

- `common.planning`: plain data and pure functions (cost graph, cuts, min cut, DSL/DSH and the
  baselines, bandwidth map, load regime, profiles as data, bandwidth estimator, units). No torch,
  no zmq, no asyncio: planners run and are tested on synthetic DAGs.
- `common.model`: torch (model zoo, fx trace, profiler, exact split execution, hosting, plots).
  May use planning; never the runtime.
- `common.runtime`: the wire contract, tensor frames, ZeroMQ channel, service base, metrics,
  configuration. May use planning; never the model layer.
- `common.errors`: the exception hierarchy all three raise.

`tests/test_layers.py` enforces the rule.
"""
