# Sourced by the launchers: how many processes to start.
# NPROC if set; else the GPUs listed in CUDA_VISIBLE_DEVICES ("" or "-1" hides them all); else every GPU
# nvidia-smi sees; else 1 (CPU).
count_processes() {
    if [[ -n "${NPROC:-}" ]]; then
        echo "$NPROC"
    elif [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then
        local gpus count=0 gpu
        IFS=',' read -ra gpus <<< "${CUDA_VISIBLE_DEVICES}"
        for gpu in "${gpus[@]}"; do [[ -n "$gpu" && "$gpu" != "-1" ]] && count=$((count + 1)); done
        echo $(( count > 0 ? count : 1 ))
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        nvidia-smi -L | grep -c '^GPU'
    else
        echo 1
    fi
}

# Which python to run: $PYTHON if set, else the first of the active environment's python, python3 and the
# checkout's .venv that can import what reranker needs; otherwise say how to choose one, and fail.
find_python() {
    local here="$1" candidate tried=()
    if [[ -n "${PYTHON:-}" ]]; then
        echo "$PYTHON"
        return 0
    fi
    for candidate in python python3 "$here/.venv/bin/python"; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        tried+=("$candidate")
        if PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$candidate" -c 'import torch, transformers, reranker' \
                >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: no python with reranker's dependencies (torch, transformers) found; tried: ${tried[*]:-none}." \
         "Run 'make setup' and set PYTHON=$here/.venv/bin/python, or activate the environment you installed" \
         "reranker into (pip install -e . or conda env create -f environment.yml)." >&2
    return 1
}

# Runs a script of the checkout: under torchrun with count_processes processes when that is more than one, else
# as one plain process; says which on stderr first. Usage: launch NAME SCRIPT [ARGS...] (exec: never returns).
launch() {
    local name="$1" script="$2" here python nproc
    shift 2
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    python="$(find_python "$here")"
    nproc="$(count_processes)"
    echo "${name}: ${nproc} process(es); CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}" >&2
    if (( nproc > 1 )); then
        exec "$python" -m torch.distributed.run --standalone --nproc_per_node "$nproc" "$here/$script" "$@"
    fi
    exec "$python" "$here/$script" "$@"
}
