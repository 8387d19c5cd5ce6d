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
