"""XDP C templates and headers (package data of mantra6g.ebpf)."""
