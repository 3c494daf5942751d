"""Hash sets: the files agencies compute locally and exchange instead of images.

- :mod:`.batch`: hashing many local files in parallel (``hashmatch hash``)
- :mod:`.write`: records out, as JSON lines, CSV or ``tx`` lines (hashing and export)
- :mod:`.read`: the same formats (and hand-made ones) back in, row by row, errors per line;
  :mod:`.lines` splits them into lines in bounded memory
"""
