"""Grading a class: many submissions judged at once on Dask (reference.grade.run), one sandboxed
judgement per submission (reference.grade.task), the gradebook and class summary (reference.grade.gradebook)."""
