"""Data-parallel helpers: what the processes of one run must agree on (who they are and
their start: ``model.distributed``)."""
import paddle


def mean_positives(targets, world: int):
    """(mask positives, positive cells) of the batch, averaged over the data-parallel
    processes: SOLO's two loss normalisers. None with one process (the batch's own). Means, not each
    process's own counts: DDP averages the gradients, so each process's loss divided by the mean count
    gives the gradient of the whole batch's loss over its whole count, as one process would compute it."""
    if world == 1:
        return None
    total = paddle.to_tensor([float(targets.num_masks), float(targets.num_positives)], dtype='float64')
    paddle.distributed.all_reduce(total)
    return tuple((total / world).tolist())


def rank0_minutes(minutes: float, world: int) -> float:
    """Rank 0's training minutes on every rank (each keeps its own clock), so that the
    time-based LR schedule and the stop agree across data-parallel processes."""
    if world == 1:
        return minutes
    shared = paddle.to_tensor([minutes], dtype='float64')
    paddle.distributed.broadcast(shared, src=0)
    return shared.item()
