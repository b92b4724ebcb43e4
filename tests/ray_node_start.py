"""``ray start`` for a worker node that stays on loopback (test code only).

Ray turns 127.0.0.1 into the machine's routable IP unless its cluster switch
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER) is off, and refuses to start a worker node when it is
off. tests/ray_nodes.py runs every node with the switch off (so the processes Ray starts take
127.0.0.1) and starts worker nodes through this file, which lets `ray start` go on while
keeping the node's address 127.0.0.1. Same arguments as `ray start`.
"""
import sys

from ray._private import ray_constants, services

ray_constants.ENABLE_RAY_CLUSTER = True  # a worker node is allowed...
services.get_node_ip_address = lambda address=None: "127.0.0.1"  # ...and stays on loopback
services.resolve_ip_for_localhost = lambda host: host

from ray.scripts.scripts import main  # noqa: E402

sys.argv = ["ray", *sys.argv[1:]]
main()
