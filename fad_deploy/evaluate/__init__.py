"""Quality evaluation: metrics of any runner on a seeded noisy/clean set, classical baselines."""
