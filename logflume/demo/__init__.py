"""``logflume demo``: a synthetic customer-support workload through the whole pipeline,
with a live view and a closing check of the stored totals against the emitted ones."""
