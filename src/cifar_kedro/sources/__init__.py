"""Where the images come from. Each source loads into the same shape, which the data_processing
pipeline turns into splits, whatever the source::

    {"train": {"images": uint8 (N, H, W, 3), "labels": int64 (N,)},
     "test": the same, or None (a seeded, stratified share of train is held out instead),
     "class_names": [...],          # label i is class_names[i]
     "checksums": {...},            # what identifies the files read (the data manifest cites it)
     "unreadable": [{"path", "error", "split", "class_name"}]}   # files left out, if allowed

* ``cifar10``      — the official CIFAR-10 Python batches: safe reading, exact Python-2 writing;
* ``download``     — getting the official archive (MD5-checked, safely unpacked);
* ``synthetic``    — a learnable stand-in in the same batch format, for the demo and tests;
* ``image_folder`` — any class-per-folder tree of JPEG/PNG/WebP/BMP images.

The catalog's dataset classes (``cifar_kedro.datasets``) are thin wrappers over these.
"""
