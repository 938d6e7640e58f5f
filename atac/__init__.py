"""atac: the open, reproducible companion to *ATAC-Net: Zoomed view works better for Anomaly
Detection* (Gupta, Gautam, Malyala, arXiv 2406.14398).

Few-shot (weakly-supervised) image anomaly detection: a few known defect images plus many normal
ones, a CNN scorer trained with the deviation loss (DevNet), and an attention map that crops a
"zoomed view" the network scores a second time (ATAC-Net, Algorithm 1 of the supplement).
"""

__version__ = "0.1.0"
