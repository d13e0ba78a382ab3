"""moto_server, single-threaded: moto's transactions are atomic only when requests do not
interleave, and the conformance suite attacks exactly that. Binds a free loopback port and
prints it on the first line of stdout."""
import os
import signal
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server



class OneRequestPerConnection(MotoRequestHandler):
    # a single-threaded server must not wait on an idle keep-alive connection while others queue
    protocol_version = "HTTP/1.0"


app = DomainDispatcherApplication(create_backend_app)
server = make_server("127.0.0.1", 0, app, threaded=False, request_handler=OneRequestPerConnection)
os.environ["MOTO_PORT"] = str(server.server_port)
print(server.server_port, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server.serve_forever()
