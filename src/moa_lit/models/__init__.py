"""Network architectures. Each exposes ``body`` (input -> representation) and
``head`` (representation -> target logits) so a pretrained body can be kept
while the head is replaced for transfer to another target set."""
