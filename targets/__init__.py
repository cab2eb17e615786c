"""Target backends: BMv2 (v1model), Tofino (TNA) and XDP."""
