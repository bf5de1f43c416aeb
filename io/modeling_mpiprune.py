"""modeling_mpiprune: a LLaMA-family model whose blocks have their own widths (written by mpiprune).

config.json holds the stock LlamaConfig keys (each the largest width of any block, head_dim
explicit) and
    "per_layer_widths": {"num_attention_heads": [...], "num_key_value_heads": [...],
                         "intermediate_size": [...]}
with one entry per block, and optionally "o_proj_bias": true / "down_proj_bias": true: o_proj
and down_proj carry a bias while q/k/v and gate/up do not (FLAP's bias compensation, which
stock LlamaConfig cannot say: attention_bias and mlp_bias switch all of them). A block with 0 heads has no attention sub-block (no q/k/v/o, no
input_layernorm): the residual passes through unchanged; a block with 0 FFN width has no MLP
(no gate/up/down, no post_attention_layernorm). Everything else is transformers' own Llama code,
built per block with that block's widths.

    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)

Tested with transformers 4.46 (PyTorch 1.13 and 2.x).
"""
import copy

from torch import nn
from transformers.models.llama import modeling_llama as _ml


def _widths(config, i):
    w = config.per_layer_widths
    return (int(w["num_attention_heads"][i]), int(w["num_key_value_heads"][i]),
            int(w["intermediate_size"][i]))


class MpiPruneDecoderLayer(nn.Module):
    """LlamaDecoderLayer with this block's widths; absent sub-blocks are the identity."""

    def __init__(self, config, layer_idx):
        super().__init__()
        self.hidden_size = config.hidden_size
        heads, kv_heads, ffn = _widths(config, layer_idx)
        self.self_attn = self.input_layernorm = None
        self.mlp = self.post_attention_layernorm = None
        if heads > 0:
            c = copy.deepcopy(config)
            c.num_attention_heads, c.num_key_value_heads = heads, kv_heads
            classes = getattr(_ml, "LLAMA_ATTENTION_CLASSES", {})
            attn = classes.get(getattr(config, "_attn_implementation", "eager"),
                               _ml.LlamaAttention)
            self.self_attn = attn(config=c, layer_idx=layer_idx)
            if getattr(config, "o_proj_bias", False):
                o = self.self_attn.o_proj
                self.self_attn.o_proj = nn.Linear(o.in_features, o.out_features, bias=True)
            self.input_layernorm = _ml.LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        if ffn > 0:
            c = copy.deepcopy(config)
            c.intermediate_size = ffn
            self.mlp = _ml.LlamaMLP(c)
            if getattr(config, "down_proj_bias", False):
                dn = self.mlp.down_proj
                self.mlp.down_proj = nn.Linear(dn.in_features, dn.out_features, bias=True)
            self.post_attention_layernorm = _ml.LlamaRMSNorm(config.hidden_size,
                                                             eps=config.rms_norm_eps)

    def forward(self, hidden_states, attention_mask=None, position_ids=None,
                past_key_value=None, output_attentions=False, use_cache=False,
                cache_position=None, position_embeddings=None, **kwargs):
        attn_weights = None
        if self.self_attn is not None:
            residual = hidden_states
            h = self.input_layernorm(hidden_states)
            h, attn_weights, past_key_value = self.self_attn(
                hidden_states=h, attention_mask=attention_mask, position_ids=position_ids,
                past_key_value=past_key_value, output_attentions=output_attentions,
                use_cache=use_cache, cache_position=cache_position,
                position_embeddings=position_embeddings, **kwargs)
            hidden_states = residual + h
        if self.mlp is not None:
            residual = hidden_states
            hidden_states = residual + self.mlp(self.post_attention_layernorm(hidden_states))
        outputs = (hidden_states,)
        if output_attentions:
            outputs += (attn_weights,)
        if use_cache:
            outputs += (past_key_value,)
        return outputs


class MpiPruneLlamaModel(_ml.LlamaModel):
    def __init__(self, config):
        # The stock constructor with no blocks (it would build them at the largest widths).
        c0 = copy.deepcopy(config)
        c0.num_hidden_layers = 0
        super().__init__(c0)
        self.config = config
        self.layers = nn.ModuleList(
            [MpiPruneDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.post_init()


class MpiPruneLlamaForCausalLM(_ml.LlamaForCausalLM):
    def __init__(self, config):
        _ml.LlamaPreTrainedModel.__init__(self, config)
        self.model = MpiPruneLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
