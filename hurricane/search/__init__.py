"""The search methods: HURRICANE's hardware-aware space, evolution under a budget, ProxylessNAS."""
