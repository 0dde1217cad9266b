"""The component-model value layer: the WIT type model, values and the canonical ABI codec."""
