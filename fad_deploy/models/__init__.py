"""Networks: the FAN student and its ablations, the teacher U-Net and scaled-down baselines."""
