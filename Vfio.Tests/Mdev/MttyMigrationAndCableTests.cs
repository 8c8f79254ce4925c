// Migration of the mtty sample on linux-6.12 (the stream, the state machine, the resume
// errnos, the deferred reset) as the real 6.12.118 answered mtty_probe.c, and the cable
// (the simulator's extension): transmit to the far end, far-end bytes into the FIFO with
// the MSI eventfd, backpressure bounds, detach, determinism.

using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mtty;

namespace Vfio.Tests.Mdev;

public sealed class MttyMigrationAndCableTests
{
    private static readonly ulong[] s_seeds = [1, 2, 3, 5];

    /// <summary>VFIO_DEVICE_FEATURE MIG_DEVICE_STATE SET: the errno or 0, and the data fd.</summary>
    private static long SetState(MttyRig rig, VfioDeviceMigState s, out int dataFd)
    {
        var b = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(b, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), VfioFeature.Set | VfioFeature.MigDeviceState);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), (uint)s);
        long r = rig.Type1.User.Ioctl(rig.Fd.Fd, VfioIoctl.DeviceFeature, b);
        dataFd = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(12));
        return r;
    }

    private static ulong GetU64Feature(MttyRig rig, uint feature)
    {
        var b = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(b, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), VfioFeature.Get | feature);
        Assert.That(rig.Type1.User.Ioctl(rig.Fd.Fd, VfioIoctl.DeviceFeature, b), Is.Zero, ErrorReason.Current);
        return BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(8));
    }

    [Test]
    public void Migration_RoundTripKeepsTheUartState_AndResumeChecksAreTheKernels()
    {
        var rig = new MttyRig();
        rig.Run(() =>
        {
            rig.Open();
            Assert.That(GetU64Feature(rig, VfioFeature.Migration), Is.EqualTo(7ul), "STOP_COPY|P2P|PRE_COPY");
            Assert.That(GetU64Feature(rig, VfioFeature.MigDeviceState) & 0xffffffff, Is.EqualTo((ulong)VfioDeviceMigState.Running));
            Assert.That(GetU64Feature(rig, VfioFeature.MigDataSize), Is.EqualTo(96ul));
            Assert.That(rig.Fd.ProbeFeature(VfioFeature.DmaLoggingStart), Is.True, "no-op log ops");

            rig.Wr(0, 2, 0x07);
            rig.Wr(0, 7, 0x42);
            rig.Wr(0, 1, 0x05);
            rig.WrAll(0, "mig");
            rig.Wr(1, 7, 0x77);
            Assert.That(SetState(rig, VfioDeviceMigState.PreCopy, out int pfd), Is.Zero);
            Assert.That(pfd, Is.GreaterThanOrEqualTo(0));
            var pi = new byte[24];
            BinaryPrimitives.WriteUInt32LittleEndian(pi, 24);
            Assert.That(rig.Type1.User.Ioctl(pfd, VfioIoctl.MigGetPrecopyInfo, pi), Is.Zero);
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(pi.AsSpan(8)), Is.EqualTo(24ul), "initial bytes: the header");
            var stream = new byte[128];
            Assert.That(rig.Type1.User.Read(pfd, stream.AsSpan(0, 128)), Is.EqualTo(24));
            Assert.That(SetState(rig, VfioDeviceMigState.StopCopy, out int again), Is.Zero);
            Assert.That(again, Is.EqualTo(-1), "the PRE_COPY file carries on");
            Assert.That(rig.Type1.User.Ioctl(pfd, VfioIoctl.MigGetPrecopyInfo, pi), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.Type1.User.Read(pfd, stream.AsSpan(24, 104)), Is.EqualTo(72));
            Assert.That(Convert.ToHexString(stream, 0, 24).ToLowerInvariant(), Is.EqualTo("4e2c3e8c89099d7e010000000000000002000000" + "00000000"));
            Assert.That(Convert.ToHexString(stream, 24, 36).ToLowerInvariant(), Is.EqualTo("0005000000000042" + "6d696700000000000000000000000000" + "030003" + "000000" + "0000" + "071001" + "00"));
            Assert.That(stream[60 + 7], Is.EqualTo(0x77), "port 1's scratch");
            Assert.That(SetState(rig, VfioDeviceMigState.Stop, out _), Is.Zero);
            Assert.That(rig.Type1.User.Read(pfd, stream.AsSpan(100, 8)), Is.EqualTo(Errno.ENODEV.Negative()), "disabled once the device left STOP_COPY");
            rig.Type1.User.Close(pfd);

            Assert.That(SetState(rig, VfioDeviceMigState.Resuming, out int rfd), Is.Zero);
            Assert.That(rig.Type1.User.Write(rfd, stream.AsSpan(0, 97)), Is.EqualTo(Errno.ENOMEM.Negative()), "longer than mtty_data_size");
            byte[] bad = stream[..96];
            bad[0] ^= 1;
            Assert.That(rig.Type1.User.Write(rfd, bad), Is.EqualTo(Errno.EFAULT.Negative()), "bad magic");
            rig.Type1.User.Close(rfd);
            Assert.That(SetState(rig, VfioDeviceMigState.Stop, out _), Is.Zero, "the sample still loads the ports of a stream whose header failed");

            Assert.That(SetState(rig, VfioDeviceMigState.Resuming, out rfd), Is.Zero);
            Assert.That(rig.Type1.User.Write(rfd, stream.AsSpan(0, 10)), Is.EqualTo(10));
            Assert.That(SetState(rig, VfioDeviceMigState.Stop, out _), Is.EqualTo(Errno.EINVAL.Negative()), "short stream");
            Assert.That(rig.Type1.User.Write(rfd, stream.AsSpan(10, 86)), Is.EqualTo(86));
            rig.Wr(0, 2, 0x07);
            rig.Wr(0, 7, 0x00);
            rig.Wr(0, 1, 0x00);
            Assert.That(SetState(rig, VfioDeviceMigState.Running, out _), Is.Zero);
            rig.Type1.User.Close(rfd);
            Assert.That(rig.Regs(0), Is.EqualTo("IER=05 IIR=c4 LCR=00 MCR=00 LSR=01 MSR=b3 SCR=42"), "resumed");
            Assert.That(new[] { rig.Rd(0, 0), rig.Rd(0, 0), rig.Rd(0, 0), rig.Rd(0, 0) }, Is.EqualTo("mig\0"u8.ToArray()));

            Assert.That(SetState(rig, (VfioDeviceMigState)99, out _), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(SetState(rig, VfioDeviceMigState.RunningP2p, out _), Is.Zero);
            Assert.That(SetState(rig, VfioDeviceMigState.Resuming, out int r2), Is.Zero);
            rig.Type1.User.Close(r2);
            Assert.That(SetState(rig, VfioDeviceMigState.PreCopyP2p, out _), Is.EqualTo(Errno.EINVAL.Negative()), "RESUMING → STOP cannot load an empty stream");
            rig.Fd.Reset();
            Assert.That(GetU64Feature(rig, VfioFeature.MigDeviceState) & 0xffffffff, Is.EqualTo((ulong)VfioDeviceMigState.Running), "RESET returns to RUNNING");
        });
    }

    [Test]
    public void Cable_CarriesTransmitToTheFarEnd_AndFarEndBytesRaiseMsiAndComeOutOfRbr()
    {
        var rig = new MttyRig();
        rig.Run(() =>
        {
            rig.Open();
            int msi = rig.Eventfd();
            Assert.That(rig.SetEventfd(1, msi), Is.Zero);
            rig.Wr(0, 2, 0x07);
            rig.Wr(0, 1, 0x01);
            using MttyCable cable = MttyModule.AttachTo(rig.Device, Guid.Empty, 0);
            rig.WrAll(0, "hi");
            Assert.That(cable.ReadAvailable(), Is.EqualTo("hi"u8.ToArray()), "THR writes reach the far end");
            Assert.That(rig.Rd(0, 5) & 0x01, Is.Zero, "nothing looped back");
            Assert.That(rig.Ev(msi), Is.EqualTo(-(long)Errno.EAGAIN));
            Assert.That(cable.Send("ok"u8), Is.EqualTo(2));
            Assert.That(rig.Ev(msi), Is.EqualTo(1), "RDI through the MSI eventfd");
            Assert.That(new[] { rig.Rd(0, 0), rig.Rd(0, 0) }, Is.EqualTo("ok"u8.ToArray()));
            cable.Dispose();
            rig.Wr(0, 0, (byte)'L');
            Assert.That(rig.Rd(0, 0), Is.EqualTo((byte)'L'), "detach restores the loopback");
        });
    }

    [Test]
    public void Cable_Backpressure_BoundsWhatIsBufferedInBothDirections()
    {
        var rig = new MttyRig();
        rig.Run(() =>
        {
            rig.Open();
            rig.Wr(0, 2, 0x07);
            using MttyCable cable = MttyModule.AttachTo(rig.Device, Guid.Empty, 0);
            byte[] data = [.. Enumerable.Range(0, 1000).Select(i => (byte)i)];
            var got = new List<byte>();
            int sent = 0;
            while (got.Count < data.Length)
            {
                sent += cable.Send(data.AsSpan(sent));
                Assert.That(rig.Device.Port(0).Count, Is.LessThanOrEqualTo(15), "the FIFO never fills its 16th slot");
                Assert.That(cable.Pending, Is.LessThanOrEqualTo(MttyCable.PipeCapacity), "the pipe stays bounded");
                Assert.That(sent - got.Count, Is.LessThanOrEqualTo(MttyCable.PipeCapacity + 15), "bytes in flight are bounded");
                for (int i = 0; i < 3 && (rig.Rd(0, 5) & 0x01) != 0; i++)
                {
                    got.Add(rig.Rd(0, 0)); // a slow guest: three bytes per round
                }
            }

            Assert.That(got, Is.EqualTo(data), "every byte arrives, in order");

            // Transmit: a far end that never reads makes the line busy; further bytes drop.
            for (int i = 0; i < MttyCable.PipeCapacity; i++)
            {
                rig.Wr(0, 0, 1);
            }

            Assert.That(rig.Rd(0, 5) & 0x60, Is.Zero, "no THRE/TEMT while the far end does not drain");
            rig.Wr(0, 0, 2);
            Assert.That(cable.TxDropped, Is.EqualTo(1));
            Assert.That(cable.ReadAvailable(), Has.Length.EqualTo(MttyCable.PipeCapacity));
            Assert.That(rig.Rd(0, 5) & 0x60, Is.EqualTo(0x60), "drained: THRE|TEMT");
        });
    }

    [Test]
    public void Cable_UsedThroughTheRawPipeEnds_KeepsTheLineStateAndTheBounds()
    {
        var rig = new MttyRig();
        rig.Run(() =>
        {
            rig.Open();
            rig.Wr(0, 2, 0x07);
            using MttyCable cable = MttyModule.AttachTo(rig.Device, Guid.Empty, 0);

            // Transmit until the line is busy, then drain through FarEnd.Input, not ReadAvailable.
            for (int i = 0; i < MttyCable.PipeCapacity; i++)
            {
                rig.Wr(0, 0, (byte)i);
            }

            Assert.That(rig.Rd(0, 5) & 0x60, Is.Zero, "busy: no THRE/TEMT");
            PipeReader input = cable.FarEnd.Input;
            Assert.That(input.TryRead(out ReadResult r), Is.True);
            Assert.That(r.Buffer.Length, Is.EqualTo(MttyCable.PipeCapacity));
            input.AdvanceTo(r.Buffer.GetPosition(40));
            Assert.That(rig.Rd(0, 5) & 0x60, Is.EqualTo(0x20), "24 bytes still unread: THRE (room) but not TEMT");
            Assert.That(input.TryRead(out r), Is.True);
            input.AdvanceTo(r.Buffer.End);
            Assert.That(rig.Rd(0, 5) & 0x60, Is.EqualTo(0x60), "all read: THRE|TEMT");
            rig.Wr(0, 0, 0x55);
            Assert.That(cable.TxDropped, Is.Zero, "the line took every byte");
            Assert.That(cable.ReadAvailable(), Is.EqualTo(new byte[] { 0x55 }));

            // Receive through FarEnd.Output: Pending counts it, and Send respects the bound.
            PipeWriter output = cable.FarEnd.Output;
            output.Write(new byte[20].AsSpan());
            Assert.That(cable.Pending, Is.EqualTo(20));
            Assert.That(output.FlushAsync().IsCompleted, Is.True);
            cable.Deliver();
            Assert.That(cable.Pending, Is.EqualTo(5), "the FIFO took 15, five wait in the pipe");
            Assert.That(cable.Send(new byte[100]), Is.EqualTo(MttyCable.PipeCapacity - 5), "Send fills the pipe up to its bound, no further");
            Assert.That(cable.Pending, Is.EqualTo(MttyCable.PipeCapacity));
        });
    }

    [Test]
    public void Cable_IsDeterministic_SameSeedSameTrace([Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        string Run()
        {
            var rig = new MttyRig(mode: mode, seed: seed);
            var log = new System.Text.StringBuilder();
            RunResult result = rig.Type1.Core.Sim.Run(() =>
            {
                rig.Open();
                int msi = rig.Eventfd();
                rig.SetEventfd(1, msi);
                rig.Wr(0, 2, 0x07);
                rig.Wr(0, 1, 0x01);
                using MttyCable cable = MttyModule.AttachTo(rig.Device, Guid.Empty, 0);
                KTask far = rig.Type1.Kernel.Spawn("far-end", () =>
                {
                    byte[] msg = "0123456789abcdefghij"u8.ToArray();
                    int off = 0;
                    while (off < msg.Length)
                    {
                        off += cable.Send(msg.AsSpan(off));
                        KTask.Schedule();
                    }
                });
                var got = new List<byte>();
                while (got.Count < 20)
                {
                    if ((rig.Rd(0, 5) & 0x01) != 0)
                    {
                        got.Add(rig.Rd(0, 0));
                    }

                    KTask.Schedule();
                }

                Runs.SpinUntil(() => far.HasExited);
                log.Append(System.Text.Encoding.ASCII.GetString([.. got]));
            });
            Runs.AssertPassed(result);
            return mode == SchedulerMode.Controlled ? $"{log} steps={result.Steps}" : log.ToString();
        }

        string first = Run();
        Assert.That(first, Does.StartWith("0123456789abcdefghij"));
        if (mode == SchedulerMode.Controlled)
        {
            string second = Run();
            Assert.That(second, Is.EqualTo(first), "same seed, same schedule");
        }
    }
}
