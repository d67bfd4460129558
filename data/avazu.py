"""The Avazu click log (Kaggle "Avazu Click-Through Rate Prediction") as a
schema: a CSV with a header, read by :mod:`data.tabular`.

``id`` is a 64-bit unsigned integer of up to 20 digits; it is kept as text,
never parsed, so it survives into scores intact. ``click`` is the label.
``hour`` (``YYMMDDHH``) becomes the fields ``hour_of_day`` and ``weekday``
(see :mod:`data.hour`). Every other column is categorical, integers included
(``C14``, ``banner_pos``, ...): their values are codes, not quantities. There
are no dense features, so the model's dense input is empty.
"""

from data.schema import Schema

AVAZU_SPARSE_FEATURES: tuple[str, ...] = (
    "C1",
    "banner_pos",
    "site_id",
    "site_domain",
    "site_category",
    "app_id",
    "app_domain",
    "app_category",
    "device_id",
    "device_ip",
    "device_model",
    "device_type",
    "device_conn_type",
    *(f"C{i}" for i in range(14, 22)),
)

AVAZU = Schema(
    name="avazu",
    label="click",
    dense_features=(),
    sparse_features=AVAZU_SPARSE_FEATURES,
    id_column="id",
    separator=",",
    header=True,
    sparse_kind="string",
    hour_column="hour",
)
