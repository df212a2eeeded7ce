"""memdiet's toy HTTP/1.1 server: epoll loop, one coroutine per connection, pluggable layouts.

Run it with ``python -m server --layout nofd --port 0``. It imports only the standard library, so its
idle RSS measures the connection table, not its imports.
"""
