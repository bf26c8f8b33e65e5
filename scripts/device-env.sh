# Source this on a GPU machine that has PyTorch but not NeMo (the lent H200 machines): installs the wheels carried
# in .whl/ (../shared/device/fetch-wheels.sh .whl) into /tmp/site and sets the environment the runs need.
# Sets PLUGIN to the pytest arguments that load the suite's plugin when it is not pip-installed.
# shellcheck disable=SC2034  # PLUGIN is for the sourcing script
PLUGIN=()
if [ -d .whl ] && ! python3 -c 'import nemo' 2>/dev/null; then
  # Once per machine: a warm machine keeps /tmp/site between calls (the import above fails only for lack of the path).
  if [ ! -f /tmp/site/.installed ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || return 1
    touch /tmp/site/.installed
  fi
  export PYTHONPATH=/tmp/site:$PWD/src
  PLUGIN=(-p qwen_acceptance.plugin)
fi
# Required on shared NVLink hosts; harmless elsewhere.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
