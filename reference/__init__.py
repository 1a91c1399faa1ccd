"""The judges of scratch-cnn (and of any implementation of the layer protocol).

| package | role |
|---|---|
| `reference.impl` | what is judged: the layer protocol and its loader, the adapters for other layouts and styles, the fault catalogue |
| `reference.cases` | what it is judged on: the case grid, the torch twins, the one layout conversion |
| `reference.judges` | the judges: autograd, finite differences, lifecycle, protocol, curves, the fault catalogue run |
| `reference.report` | the comparison primitive, the tolerance table, tables, coverage, summaries, the gate, publishing reports |
| `reference.sandbox` | the trust boundary: the judged code runs only in sandboxed workers |
| `reference.grade` | a class graded at once on Dask |
"""
