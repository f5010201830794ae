"""Training objectives of the generative path (next-item, MGR-LF++ alignment, SynGR, TriAlignGR's text tasks,
MQL4GRec's multitask): what one training stage trains on and with which loss."""
