//! The terminal while `top` runs (raw mode, the alternate screen, no
//! cursor), and put back as it was when `top` ends: when it quits, when it
//! fails and when it panics.

use anyhow::{Context, Result};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::{Frame, Terminal};
use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// True while the terminal is in `top`'s hands: restoring it twice (the
/// panic hook, then the guard's drop while unwinding) writes nothing twice.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The terminal, taken over; dropping it gives it back.
pub struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    /// Takes the terminal over: raw mode (keys arrive one by one, Ctrl-C
    /// as a key), the alternate screen (the shell's screen comes back as
    /// it was), the cursor hidden.
    pub fn enter() -> Result<Screen> {
        install_panic_hook();
        TAKEN.store(true, Ordering::SeqCst);
        let taken = || -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
            terminal::enable_raw_mode()?;
            execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
            Terminal::new(CrosstermBackend::new(io::stdout()))
        };
        match taken() {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(error) => {
                // Whatever part was done is undone.
                restore();
                Err(error).context("cannot take over the terminal")
            }
        }
    }

    /// Draws one frame (at the terminal's current size: a resize needs
    /// nothing more than the next draw).
    pub fn draw(&mut self, render: impl FnOnce(&mut Frame)) -> Result<()> {
        self.terminal
            .draw(render)
            .map(drop)
            .context("cannot draw on the terminal")
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Gives the terminal back: raw mode off, the shell's screen back, the
/// cursor shown. Errors are ignored: there is no better place to report
/// them than the terminal that failed.
fn restore() {
    if TAKEN.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    }
}

/// Restores the terminal before a panic's message is printed, so that it
/// can be read and the shell is usable after it.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
