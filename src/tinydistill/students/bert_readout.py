"""A BERT encoder computed only where its output is read, and on real tokens only.

Training reads few of the encoder's last-layer states: the choice head reads each (question, choice) pair's
first token, the masked-rationale head the masked rationale tokens (about one position in seven). :func:`hidden_at`
runs every layer's Linear maps on the real (unpadded) tokens, attention per padded row as the eager kernel does,
and the last layer's queries, attention output and feed-forward only at the positions read (its keys and values
still come from every real token). It is the transformers forward's function (same weights, same operations in
the same order), and dropout draws masks of the padded forward's shapes, in its order, read at the kept rows, so
a seeded run draws exactly what the transformers forward draws: the same training to rounding.

Encoders it does not recognise (not a plain ``BertModel``; LoRA-wrapped; gradient checkpointing; a decoder; SDPA
or flash attention with attention dropout active, whose random draws happen inside the kernel) take the
transformers forward, through :func:`supports`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.bert.modeling_bert import BertForMultipleChoice, BertLayer, BertModel


def supports(encoder: object) -> bool:
    """Whether :func:`hidden_at` computes ``encoder``'s function (else use the transformers forward)."""
    if type(encoder) is not BertModel or encoder.config.is_decoder or encoder.gradient_checkpointing:
        return False
    layers = encoder.encoder.layer
    if not len(layers) or any(type(layer) is not BertLayer or layer.chunk_size_feed_forward for layer in layers):
        return False
    attention_dropout = encoder.training and encoder.config.attention_probs_dropout_prob > 0
    return encoder.config._attn_implementation == "eager" or not attention_dropout


def _dropout(x: torch.Tensor, dropout: torch.nn.Dropout, shape: tuple[int, ...], rows: torch.Tensor) -> torch.Tensor:
    """``dropout`` of ``x``, the flat ``rows`` of a tensor of ``shape``: the mask drawn for the whole tensor, as the
    padded forward draws it, read at those rows."""
    if not dropout.training or dropout.p == 0.0:
        return x
    return x * _keep(shape, dropout.p, x).view(-1, shape[-1]).index_select(0, rows)


def _keep(shape: tuple[int, ...], p: float, like: torch.Tensor) -> torch.Tensor:
    """The scale ``F.dropout`` applies to a tensor of ``shape`` (0 or 1 / (1 - p)), from the same random draw (the
    training loop's CPU dropout included: it swaps ``F.dropout`` itself)."""
    return F.dropout(like.new_ones(shape), p, training=True)


def _project(x: torch.Tensor, *linears: torch.nn.Module) -> torch.Tensor:
    """``linears`` applied to ``x``, outputs side by side: one matmul over their stacked weights when they are plain
    ``nn.Linear`` (a larger, more efficient GEMM), else one call each."""
    if all(type(m) is torch.nn.Linear and m.bias is not None for m in linears):
        weight = torch.cat([m.weight for m in linears])  # type: ignore[misc]
        bias = torch.cat([m.bias for m in linears])  # type: ignore[misc]
        return F.linear(x, weight, bias)
    return torch.cat([m(x) for m in linears], dim=-1)


def _row_layout(flat: torch.Tensor, length: int, batch: int) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Flat positions (ascending) of a (batch, length) grid → their slot in a (batch, width) layout where each
    row's positions sit left-aligned, the width, and each slot's position in its row (0 where empty)."""
    row = torch.div(flat, length, rounding_mode="floor")
    counts = torch.bincount(row, minlength=batch)
    width = max(int(counts.max()), 1) if flat.numel() else 1
    starts = torch.cumsum(counts, 0) - counts
    slot = row * width + (torch.arange(flat.numel(), device=flat.device) - starts[row])
    positions = torch.zeros(batch * width, dtype=torch.long, device=flat.device)
    positions[slot] = flat - row * length
    return slot, width, positions.view(batch, width)


def _layer(layer: BertLayer, x: torch.Tensor, real: torch.Tensor, slot_of: torch.Tensor, queries: torch.Tensor,
           add_mask: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """One BERT layer: ``x`` (T, H) the states at the flat positions ``real`` (``slot_of`` maps a flat position to
    its row of ``x``); returns the new states at the flat positions ``queries`` (``real`` itself, or a subset of
    it in the last layer)."""
    sa, hidden = layer.attention.self, x.shape[-1]
    heads, size = sa.num_attention_heads, sa.attention_head_size
    all_rows = queries is real

    def split_heads(t: torch.Tensor, rows: torch.Tensor, width: int) -> tuple[torch.Tensor, ...]:
        """(R, n·H) projections at flat ``rows`` → n tensors (B, heads, width, d), zero where no row."""
        parts = t.shape[-1] // hidden
        out = t.new_zeros(batch * width, t.shape[-1]).index_copy(0, rows, t)
        return out.view(batch, width, parts, heads, size).permute(2, 0, 3, 1, 4).unbind(0)

    if all_rows:
        x_q, (query, key, value) = x, split_heads(_project(x, sa.query, sa.key, sa.value), real, length)
        q_rows, width = real, length
    else:
        x_q = x.index_select(0, slot_of[queries])
        key, value = split_heads(_project(x, sa.key, sa.value), real, length)
        q_rows, width, q_positions = _row_layout(queries, length, batch)
        (query,) = split_heads(sa.query(x_q), q_rows, width)
    scores = torch.matmul(query, key.transpose(2, 3)) * sa.scaling + add_mask
    probs = F.softmax(scores, dim=-1)
    if sa.training and sa.dropout.p > 0:
        keep = _keep((batch, heads, length, length), sa.dropout.p, probs)
        if not all_rows:
            keep = keep.gather(2, q_positions[:, None, :, None].expand(batch, heads, width, length))
        probs = probs * keep
    context = torch.matmul(probs, value).transpose(1, 2).reshape(batch * width, hidden).index_select(0, q_rows)
    out = layer.attention.output
    attended = out.LayerNorm(_dropout(out.dense(context), out.dropout, (batch, length, hidden), queries) + x_q)
    ffn = layer.output
    return ffn.LayerNorm(_dropout(ffn.dense(layer.intermediate(attended)), ffn.dropout, (batch, length, hidden),
                                  queries) + attended)


def hidden_at(encoder: BertModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              token_type_ids: torch.Tensor | None, wanted: torch.Tensor) -> torch.Tensor:
    """``encoder(...).last_hidden_state[wanted]`` for (B, L) inputs and a (B, L) boolean ``wanted`` (real
    tokens only), computed on the real tokens and, in the last layer, at the wanted positions only. → (N, H)."""
    batch, length = input_ids.shape
    embedded = encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # its dropout: full shape
    mask = attention_mask.bool()
    real = mask.reshape(-1).nonzero().squeeze(1)
    queries = (wanted.bool() & mask).reshape(-1).nonzero().squeeze(1)
    add_mask = (~mask)[:, None, None, :].to(embedded.dtype) * torch.finfo(embedded.dtype).min
    x = embedded.reshape(batch * length, -1).index_select(0, real)
    slot_of = torch.full((batch * length,), -1, dtype=torch.long, device=x.device)
    slot_of[real] = torch.arange(real.numel(), device=x.device)
    layers = encoder.encoder.layer
    for i, layer in enumerate(layers):
        x = _layer(layer, x, real, slot_of, queries if i == len(layers) - 1 else real, add_mask, batch, length)
    return x


def supports_choice_head(scorer: object, attention_mask: torch.Tensor) -> bool:
    """Whether :func:`choice_logits` computes ``scorer``'s choice scores of (B, K, L) pairs with this mask: a
    BERT choice model, every pair starting with a real token (the head reads position 0; left padding runs whole)."""
    return (type(scorer) is BertForMultipleChoice and scorer.bert.pooler is not None and supports(scorer.bert)
            and bool(attention_mask[..., 0].all()))


def choice_logits(scorer: BertForMultipleChoice, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  token_type_ids: torch.Tensor | None) -> torch.Tensor:
    """``scorer(...).logits`` for (B, K, L) pair tensors, the encoder read at each pair's first token. → (B, K)."""
    batch, choices, length = input_ids.shape
    flat = (batch * choices, length)
    wanted = torch.zeros(flat, dtype=torch.bool, device=input_ids.device)
    wanted[:, 0] = True
    first = hidden_at(scorer.bert, input_ids.reshape(flat), attention_mask.reshape(flat),
                      None if token_type_ids is None else token_type_ids.reshape(flat), wanted)
    pooler = scorer.bert.pooler
    assert pooler is not None  # (supports_choice_head)
    pooled = pooler.activation(pooler.dense(first))
    return scorer.classifier(scorer.dropout(pooled)).view(batch, choices)
