# Hostile input: absurd sizes in config.json, FIFOs in place of files, a model truncated under
# a run. Each must end with exit 3 and one error line naming the file, never a hang or a crash.
set(MP_HI_DIR ${MP_BAD_DIR}/hostile)
add_test(NAME gen_hostile_inputs
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/gen_hostile_inputs.py
                 ${MP_HI_DIR} ${MP_FIXTURE_DIR})
set_tests_properties(gen_hostile_inputs PROPERTIES FIXTURES_SETUP hostile_inputs
                     TIMEOUT 60 LABELS "badinput;io")
set(MP_HI_EVAL_DATA ${MP_FIXTURE_DIR}/eval_dev.bin)

# Absurd sizes: every value must be refused by the limits, before a product is formed.
foreach(case hidden_size_4503599627370496 num_attention_heads_1099511627776
             num_key_value_heads_1099511627776 head_dim_1099511627776
             intermediate_size_4503599627370496 num_hidden_layers_1099511627776
             vocab_size_4503599627370496 max_position_embeddings_4503599627370496)
  string(REGEX REPLACE "_[0-9]+$" "" field ${case})
  string(REGEX REPLACE "^.*_" "" value ${case})
  if(field STREQUAL "intermediate_size")
    set(field "intermediate_size/ffn_dim")
  endif()
  mp_add_fail_test(cli_bad_cfg_${case} EXIT 3
    REGEX "cfg_${case}/config\\.json: ${field} ${value} exceeds the limit"
    FIXTURES hostile_inputs LABELS io
    COMMAND ${MP_CLI} eval --model ${MP_HI_DIR}/cfg_${case} --data ${MP_HI_EVAL_DATA}
            --seqlen 256 --quiet)
endforeach()
mp_add_fail_test(cli_bad_cfg_big_consistent EXIT 3
  REGEX "model\\.safetensors: tensor 'model\\.embed_tokens\\.weight' has shape \\[512, 64\\] but .*config\\.json gives \\[vocab_size 16777216, hidden_size 1048576\\]"
  FIXTURES hostile_inputs LABELS io
  COMMAND ${MP_CLI} eval --model ${MP_HI_DIR}/cfg_big_consistent --data ${MP_HI_EVAL_DATA}
          --seqlen 256 --quiet)
mp_add_fail_test(cli_bad_cfg_heads_x_head_dim EXIT 3
  REGEX "config\\.json: num_attention_heads x head_dim \\(16384 x 1048576\\) exceeds the limit"
  FIXTURES hostile_inputs LABELS io
  COMMAND ${MP_CLI} eval --model ${MP_HI_DIR}/cfg_heads_x_head_dim --data ${MP_HI_EVAL_DATA}
          --seqlen 256 --quiet)

# FIFOs: refused at once (the test's 120 s timeout would catch a hang).
function(mp_fifo_case name regex)
  mp_add_fail_test(cli_fifo_${name} EXIT 3 REGEX "${regex}" FIXTURES hostile_inputs LABELS io
                   COMMAND ${ARGN})
endfunction()
mp_fifo_case(weights "fifo_weights/model\\.safetensors: not a regular file \\(a FIFO\\)"
  ${MP_CLI} eval --model ${MP_HI_DIR}/fifo_weights --data ${MP_HI_EVAL_DATA} --seqlen 256)
mp_fifo_case(config "fifo_config/config\\.json: not a regular file \\(a FIFO\\)"
  ${MP_CLI} eval --model ${MP_HI_DIR}/fifo_config --data ${MP_HI_EVAL_DATA} --seqlen 256)
mp_fifo_case(index "fifo_index/model\\.safetensors\\.index\\.json: not a regular file \\(a FIFO\\)"
  ${MP_CLI} eval --model ${MP_HI_DIR}/fifo_index --data ${MP_HI_EVAL_DATA} --seqlen 256)
mp_fifo_case(tokens "fifo_tok\\.bin: not a regular file \\(a FIFO\\)"
  ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data ${MP_HI_DIR}/fifo_tok.bin --seqlen 256)
mp_fifo_case(sidecar "fifo_side\\.json: not a regular file \\(a FIFO\\)"
  ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data ${MP_HI_DIR}/fifo_side.bin --seqlen 256)
mp_fifo_case(npy "fifo_tok\\.npy: not a regular file \\(a FIFO\\)"
  ${MP_CLI} eval --model ${MP_FIXTURE_DIR} --data ${MP_HI_DIR}/fifo_tok.npy --seqlen 256)
mp_fifo_case(calib "fifo_tok\\.bin: not a regular file \\(a FIFO\\)"
  ${MP_CLI} prune --model ${MP_FIXTURE_DIR} --calib ${MP_HI_DIR}/fifo_tok.bin --seqlen 32
  --nsamples 2 --method magnitude --sparsity 0.5 --out ${MP_HI_DIR}/fifo_calib_out --quiet)
mp_fifo_case(status "fifo_ckpt\\.h5: not a regular file"
  ${MP_CLI} status ${MP_HI_DIR}/fifo_ckpt.h5)

# model.safetensors truncated while eval or prune reads it: one error line, exit 3, no SIGBUS,
# no OUT.
foreach(mode eval prune)
  mp_add_cli_test(cli_truncate_during_${mode} TIMEOUT 300 LABELS "badinput;io"
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_truncate.py ${mode}
            ${MP_CLI} ${MP_FIXTURE_DIR} ${MP_HI_DIR}/truncate_${mode})
endforeach()
