"""Running the whole system on one machine: `dads up` (processes on loopback, an emulated
uplink), the demo's story, and the test bed (network namespaces joined by a shaped real link).

Built over the services as a user would run them (each its own process); the services never
import this package.
"""
