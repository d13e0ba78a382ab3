"""moto_server for the test suite: single-threaded, with a cheaper transaction rollback.

- Single-threaded, one request per connection: moto's transactions are atomic only when requests
  do not interleave, and the store conformance suite attacks exactly that.
- moto 5.2 backs up the *whole table* (copy.deepcopy) before every TransactWriteItems to roll back
  a cancelled one; on a table of thousands of items that costs seconds and gigabytes per call.
  The same rollback is done here from snapshots of just the items the transaction touches.

Binds a free loopback port and prints it on the first line of stdout."""
import copy
import os
import signal
import sys

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

_transact_write_items = DynamoDBBackend.transact_write_items


class _KeepTable:
    """Stands in for the `copy` module inside moto's transact_write_items: no table backup."""

    @staticmethod
    def deepcopy(table):
        return table


def _touched_items(backend, transact_items):
    for entry in transact_items:
        for op in entry.values():
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Key") or {
                name: op["Item"][name] for name in (table.hash_key_attr, table.range_key_attr) if name and name in op.get("Item", {})
            }
            try:
                current = backend.get_item(table.name, key)
            except Exception:  # an invalid key: moto's own validation reports it
                continue
            yield table.name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None


def transact_write_items(self, transact_items):
    snapshots = list(_touched_items(self, transact_items))
    dynamodb_models.copy = _KeepTable
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table_name, key, attributes in reversed(snapshots):
            if attributes is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, attributes)
        raise
    finally:
        dynamodb_models.copy = copy


DynamoDBBackend.transact_write_items = transact_write_items


class OneRequestPerConnection(MotoRequestHandler):
    # a single-threaded server must not wait on an idle keep-alive connection while others queue
    protocol_version = "HTTP/1.0"


app = DomainDispatcherApplication(create_backend_app)
server = make_server("127.0.0.1", 0, app, threaded=False, request_handler=OneRequestPerConnection)
os.environ["MOTO_PORT"] = str(server.server_port)
print(server.server_port, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server.serve_forever()
