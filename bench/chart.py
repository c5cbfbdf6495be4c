"""Draw bench/results/latest.png: throughput and p99 latency per scenario and proxy."""

from pathlib import Path


def draw(scenarios: list[dict], path: Path) -> bool:
    """Write the chart; False (after saying why) if matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed, no chart (pip install matplotlib)")
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    proxies = list(dict.fromkeys(name for s in scenarios for name in s["proxies"]))
    names = [s["name"] for s in scenarios]
    width = 0.8 / max(len(proxies), 1)
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(names)), 8), sharex=True)
    for ax, key, label in ((axes[0], "rps", "requests/s"), (axes[1], "p99_ms", "p99 latency, ms")):
        for i, proxy in enumerate(proxies):
            xs, medians, lows, highs = [], [], [], []
            for x, s in enumerate(scenarios):
                if proxy in s["proxies"]:
                    figure = s["proxies"][proxy][key]
                    xs.append(x + (i - (len(proxies) - 1) / 2) * width)
                    medians.append(figure["median"])
                    lows.append(figure["median"] - figure["min"])
                    highs.append(figure["max"] - figure["median"])
            ax.bar(xs, medians, width, yerr=[lows, highs], capsize=3, label=proxy)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        values = [s["proxies"][p][key]["median"] for s in scenarios for p in s["proxies"]]
        if values and max(values) > 10 * min(values):  # e.g. 1 MiB bodies next to 12 bytes
            ax.set_yscale("log")
            ax.set_ylabel(label + " (log scale)")
    axes[0].legend()
    axes[0].set_title("median of the runs; whiskers: min and max")
    axes[1].set_xticks(range(len(names)), names)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
