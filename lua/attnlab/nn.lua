-- attnlab.nn: modules composed from the core's ops.  A module is a table with a forward method,
-- callable as m(x); its parameters are the tensors in m.params (by name) and those of the modules
-- in m.children (by name), which is all :parameters(), :state_dict() and :load_state_dict() need.
--
-- This file only gathers lab.nn from its rooms, each of which requires the ones it stands on:
--   nn_module.lua     nn.Module, nn.class, the naming of a module's errors, the helpers for
--                     writing modules (check_input, check_options, uniform, split_heads, ...)
--   nn_layers.lua     Linear, Embedding, LayerNorm, the activations, Sequential, MLP
--   nn_attention.lua  MultiHeadAttention, TransformerBlock, the variant options they take by name
--   nn_variants.lua   what MultiHeadAttention does per attention variant (one table)
--   nn_vision.lua     Conv2d, MaxPool2d, AvgPool2d, EccPool2d
--   gpt.lua           GPT: a decoder with an activation cache and hook points
local nn_module, nn_layers = require "attnlab.nn_module", require "attnlab.nn_layers"
local nn_attention, nn_variants = require "attnlab.nn_attention", require "attnlab.nn_variants"
local nn_vision = require "attnlab.nn_vision"

local nn = {}

nn.Module, nn.class = nn_module.Module, nn_module.class
nn.check_options, nn.check_positive_int, nn.check_input = nn_module.check_options, nn_module.check_positive_int, nn_module.check_input
nn.uniform, nn.split_heads = nn_module.uniform, nn_module.split_heads

nn.Linear, nn.Embedding, nn.LayerNorm = nn_layers.Linear, nn_layers.Embedding, nn_layers.LayerNorm
nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid = nn_layers.ReLU, nn_layers.GELU, nn_layers.Tanh, nn_layers.Sigmoid
nn.Sequential, nn.MLP = nn_layers.Sequential, nn_layers.MLP

nn.MultiHeadAttention, nn.TransformerBlock = nn_attention.MultiHeadAttention, nn_attention.TransformerBlock
nn.attention_option_names, nn.attention_module_options = nn_attention.attention_option_names, nn_attention.attention_module_options
nn.attention_variant_modules, nn.moh_gates = nn_variants.modules, nn_variants.moh_gates

nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.EccPool2d = nn_vision.Conv2d, nn_vision.MaxPool2d, nn_vision.AvgPool2d, nn_vision.EccPool2d

nn.GPT = require "attnlab.gpt"

return nn
