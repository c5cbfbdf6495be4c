"""Side-by-side benchmarks of fastgate against nginx and HAProxy; see bench/README.md."""
