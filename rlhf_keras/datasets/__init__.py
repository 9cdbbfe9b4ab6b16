"""Data shipped inside the package (read with `importlib.resources`, never by source-tree path).

* `mnist/`: the MNIST test split (10,000 images and labels, IDX gzip) with its licence note.
"""
