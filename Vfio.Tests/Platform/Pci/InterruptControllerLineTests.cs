// Tests the INTx line model of Vfio.Platform/Pci/InterruptController.cs: disable depth
// (disable_irq_nosync / enable_irq), IRQF_NO_AUTOEN, an assertion held while the line is
// disabled and replayed when it is enabled again, the unbalanced-enable WARN, delivery at
// request of a line already driven, and free_irq waiting for nothing when idle.

using NUnit.Framework;
using Vfio.Platform;
using Vfio.Platform.Devices;

namespace Vfio.Tests.Platform.Pci;

public sealed class InterruptControllerLineTests
{
    private static void Run(Action<SimMachine, GenericPciDevice> body)
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();
        Runs.AssertPassed(m.Kernel.Run(() => body(m, d)));
    }

    [Test]
    public void ADisabledLine_HoldsTheAssertion_AndEnablingReplaysItFromItsOwnTask()
    {
        Run((m, d) =>
        {
            int calls = 0;
            Assert.That(m.Interrupts.RequestIntx(d, "test", _ => Interlocked.Increment(ref calls)), Is.Zero);
            m.Interrupts.DisableIntxNosync(d);
            Assert.That(m.Interrupts.IntxDisableDepth(d), Is.EqualTo(1));
            d.Fire(0);
            Assert.That(calls, Is.Zero, "held while disabled");
            m.Interrupts.EnableIntx(d);

            Runs.SleepUntil(() => Volatile.Read(ref calls) != 0); // the replay runs in a task of its own

            Assert.That((Volatile.Read(ref calls), m.Interrupts.IntxDisableDepth(d)), Is.EqualTo((1, 0)));
        });
    }

    [Test]
    public void NoAutoEnable_StartsDisabled_AndARequestOfADrivenLineDeliversAtOnce()
    {
        Run((m, d) =>
        {
            int calls = 0;
            d.Fire(0);
            Assert.That(m.Interrupts.RequestIntx(d, "masked", _ => calls++, noAutoEnable: true), Is.Zero);
            Assert.That((calls, m.Interrupts.IntxDisableDepth(d)), Is.EqualTo((0, 1)));
            m.Interrupts.FreeIntx(d);
            Assert.That(m.Interrupts.IntxDisableDepth(d), Is.EqualTo(-1));
            Assert.That(m.Interrupts.RequestIntx(d, "auto", _ => calls++), Is.Zero);
            Assert.That(calls, Is.EqualTo(1), "an auto-enabled request of an asserted line takes the interrupt");
        });
    }

    [Test]
    public void AnEnableOfALineNotDisabled_Warns()
    {
        SimMachine m = PciMachines.OneDevice();
        GenericPciDevice d = m.Generic();
        m.Kernel.ExpectWarning("Unbalanced enable");
        Runs.AssertPassed(m.Kernel.Run(() =>
        {
            m.Interrupts.RequestIntx(d, "test", _ => { });
            m.Interrupts.EnableIntx(d);
            Assert.That(m.Interrupts.IntxDisableDepth(d), Is.Zero);
        }));
        Assert.That(m.Kernel.Warnings.Select(w => w.Title + w.Text), Has.Some.Contains("Unbalanced enable"));
    }

    [Test]
    public void VectorBlocks_AreAlignedToTheirSize_AndFreeVectorsCounts()
    {
        Run((m, _) =>
        {
            int free = m.Interrupts.FreeVectors;
            int first = m.Interrupts.AllocVectorBlock("block", 4, _ => { });
            Assert.That(first % 4, Is.Zero);
            Assert.That(m.Interrupts.FreeVectors, Is.EqualTo(free - 4));
            for (int v = first; v < first + 4; v++)
            {
                m.Interrupts.FreeVector(v);
            }

            Assert.That(m.Interrupts.FreeVectors, Is.EqualTo(free));
        });
    }
}
