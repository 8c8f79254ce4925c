// The module init and exit every sample vendor driver shares (samples/vfio-mdev/*.c,
// v6.12: mtty_dev_init, mdpy_dev_init, mbochs_dev_init and their exits): register the mdev
// driver, create the sample's class and the class device that parents its mdevs, register
// that device as an mdev parent. A failed step undoes exactly the steps before it; exit
// undoes them all in reverse (unregistering the parent removes every instance, blocking
// while user space holds one open).

using Vfio.Platform.Base;

namespace Vfio.Mdev.Samples;

internal static class SampleModule
{
    /// <summary>
    /// Registers <paramref name="driver"/>, class <paramref name="className"/> with its device
    /// <paramref name="deviceName"/>, and that device as <paramref name="parent"/> of
    /// <paramref name="types"/>. 0 with <paramref name="cls"/> and <paramref name="device"/>
    /// set, or -errno with nothing left registered.
    /// </summary>
    public static int Init(MdevCore core, MdevDriver driver, string className, string deviceName, MdevParent parent, IReadOnlyList<MdevType> types, out DeviceClass cls, out SimDevice device)
    {
        cls = null!;
        device = null!;
        int err = core.RegisterDriver(driver);
        if (err != 0)
        {
            return err;
        }

        var c = DeviceClass.Create(core.Machine, className);
        var d = new SimDevice(core.Machine, deviceName);
        err = c.DeviceRegister(d);
        if (err != 0)
        {
            c.Destroy();
            core.UnregisterDriver(driver);
            return err;
        }

        err = core.RegisterParent(parent, d, driver, types);
        if (err != 0)
        {
            c.DeviceUnregister(d);
            c.Destroy();
            core.UnregisterDriver(driver);
            return err;
        }

        (cls, device) = (c, d);
        return 0;
    }

    /// <summary>The module exit: the parent (and with it every instance), the class device, the driver, the class.</summary>
    public static void Exit(MdevCore core, MdevDriver driver, MdevParent parent, DeviceClass cls, SimDevice device)
    {
        if (parent.IsRegistered)
        {
            core.UnregisterParent(parent);
        }

        cls.DeviceUnregister(device);
        core.UnregisterDriver(driver);
        cls.Destroy();
    }
}
