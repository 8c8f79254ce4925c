// Lab 5: the device life cycle — predict the reference counts.
// Read the handout first: vfio-sim lab show 5 (or docs/labs/lab05-refcounts.md).
// The grader calls Predict once per sequence (A, B, C), then performs each sequence as
// your process and compares your counts with the kernel's after every step.

using Vfio.Sim.Labs;

namespace VfioSimLab;

public sealed class RefcountModel : RefcountSolution
{
    public override IReadOnlyList<RefcountState> Predict(RefcountSequence sequence)
    {
        // TODO: settle the handout's questions first (what a container fd, a group fd, an open
        //   device file and vfio-pci's registration each hold; what dup() changes). Then walk
        //   sequence.Steps (a RefcountAction each) from RefcountState.AtBoot and add one
        //   RefcountState per step: the seven counts after that step. A small model of who
        //   holds whom beats three tables written out. Check it on a machine of your own
        //   with sim.Graph(), vfio-sim graph or the shell's graph command.
        throw new NotImplementedException("lab 5: Predict is not written yet (handout: What to do)");
    }
}
