"""ECG signals shared by the app and training: records, simulator, renderer."""
