"""Synthetic interaction logs with a planted short-term dependency on top of long-term taste.

Each user has a favourite topic (a block of items). With probability `strength`, the next item is a fixed
function of the item exactly `lag` steps back (a permutation within the topic); otherwise it is a random
item of the user's topic. A window of the last k items contains the planted cue exactly when k >= lag.
"""

from __future__ import annotations

import numpy as np

from engine.data.sequences import InteractionLog


def planted_log(n_users: int = 400, n_items: int = 300, min_length: int = 20, max_length: int = 40,
                lag: int = 3, strength: float = 0.8, n_topics: int = 4, seed: int = 0) -> InteractionLog:
    """An InteractionLog with string ids (`u1`, `i1`, ...) and increasing integer timestamps."""
    rng = np.random.default_rng(seed)
    topics = np.array_split(rng.permutation(n_items), n_topics)
    follower = np.empty(n_items, dtype=np.int64)  # the planted rule: next = follower[item lag steps back]
    for topic in topics:
        follower[topic] = rng.permutation(topic)
    users, items, times = [], [], []
    for user in range(n_users):
        topic = topics[rng.integers(n_topics)]
        length = int(rng.integers(min_length, max_length + 1))
        sequence = list(rng.choice(topic, size=lag))
        while len(sequence) < length:
            if rng.random() < strength:
                sequence.append(int(follower[sequence[-lag]]))
            else:
                sequence.append(int(rng.choice(topic)))
        users += [f"u{user + 1}"] * length
        items += [f"i{item + 1}" for item in sequence]
        times += list(range(1_000_000 + user, 1_000_000 + user + length))
    return InteractionLog(np.array(users), np.array(items), np.array(times, dtype=np.int64),
                          name=f"synthetic (lag {lag})")
