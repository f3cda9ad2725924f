"""The subscriber kit: the stack a partner deploys once per consumer (template.yaml), its sample
consumer (consumer/app.py) and the ready filter policies (filter-policies.json, read through
:mod:`subscriber.filter_policies`). Nothing here ships in the main stack's layer."""
