"""What a reader is told: the guidance for each class, the measurements read off the trace, two
analyses compared, the charts and the PDF report."""
