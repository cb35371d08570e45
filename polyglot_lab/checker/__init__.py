"""The checker: the process that opens and runs what a submission produced, so that the grader never does.

Every load or run of a learner's artifact or code (.keras, .pt2, state dicts, .onnx, SavedModels, .tflite, the
learner's converter, the learner's codec and the server that hosts it) happens here, in a process the grader starts
in the same sandbox as the kernel (graders/checker.py): its own user, no network, no grader files. It hands back plain
data only: arrays as .npy without pickle, numbers and short strings as JSON. It holds no expected value and decides
no verdict: the grader compares what comes back with what it computed itself.

    ops.py     the operations (load this, run it on these inputs, say what it holds)
    safety.py  what is refused before it is opened (pickle in a .pt2, file or process ops in a SavedModel)
"""
