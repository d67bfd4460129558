"""What the budget search chooses among: the storages and the objectives.

Free of torch, so that the command line can offer them without loading the
model code; :mod:`slimctr.search` measures and chooses.
"""

from serving.storage_type import Storage

OBJECTIVES = ("bytes", "latency")

# by name, from the largest to the smallest
STORAGES = {
    "float32": Storage("float32", "float32"),
    "float16": Storage("float16", "float16"),
    "int8-tables": Storage("int8", "float16", "float16"),
    "int8": Storage("int8", "int8", "float16"),
}
