"""The judging core: what decides a verdict, below the judges that produce rows and the reports that
render them.

| module | role |
|---|---|
| `compare` | the one comparison primitive: a discrepancy row per tensor |
| `tolerances` | the one tolerance table, and the bounds of the training checks, each with its reason |
| `diagnosis` | what a failing row's numbers say about the bug (hypotheses checked on the implementation's own numbers) |
| `verdicts` | coverage, the verdict per layer, the exit code, and the blame of a network's failure |
"""
