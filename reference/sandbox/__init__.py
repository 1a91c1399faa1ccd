"""The trust boundary: the judged implementation runs only in sandboxed worker processes.

| module | side | role |
|---|---|---|
| `wire` | both | frames of JSON and raw array buffers; nothing is ever unpickled |
| `worker` | the worker | imports the implementation, builds and calls its objects; imports nothing of the judges |
| `target` | the judge | finds what is judged without importing it; the SHA-256 of its files |
| `client` | the judge | workers (limits, logs, bubblewrap), proxies that stand where the classes stood |
"""
