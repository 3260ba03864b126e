"""The dashboard views: FaceExplorer, PairInspector, DiversityPanel, QualityPanel, MaskLab, TrainingMonitor."""
