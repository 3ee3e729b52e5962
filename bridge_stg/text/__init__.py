"""Text conventions shared by the data pipeline and the models (torch-free): the prompt layout and the answer format
of the coupled baseline. Below both ``data`` and ``model`` in the import order."""
