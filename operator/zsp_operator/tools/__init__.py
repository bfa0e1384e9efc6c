"""Tools shipped beside the operator: the CRD generator and the demo."""
