"""The residency router: policy-as-code, effective attributes along lineage, decisions."""
